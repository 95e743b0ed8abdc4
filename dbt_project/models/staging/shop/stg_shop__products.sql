with

source as (

    select * from {{ source('shop', 'products') }}

),

renamed as (

    select

        ----------  ids
        cast(product_id as bigint) as product_id,

        ----------  text
        name as product_name,
        description as product_description,

        ----------  numerics
        cast(price as decimal(10, 2)) as product_price,

        ----------  timestamps
        {{ to_loaded_at('_sling_loaded_at') }} as loaded_at

    from source

)

select * from renamed
