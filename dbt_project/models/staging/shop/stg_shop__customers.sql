with

source as (

    select * from {{ source('shop', 'customers') }}

),

renamed as (

    select

        ----------  ids
        cast(customer_id as bigint) as customer_id,

        ----------  text
        first_name,
        last_name,
        lower(trim(email)) as email,

        ----------  timestamps
        {{ to_loaded_at('_sling_loaded_at') }} as loaded_at

    from source

)

select * from renamed
