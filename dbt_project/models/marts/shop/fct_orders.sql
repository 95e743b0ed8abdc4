{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        post_hook=[
            "delete from {{ this }} where order_id in (select deletion.row_id from {{ ref('stg_shop__deletions') }}
             as deletion where deletion.table_name = 'orders' and not exists (select 1 from
             {{ ref('stg_shop__orders') }} as staged where staged.order_id = deletion.row_id))"
        ]
    )
}}

-- an order deleted in the shop is never re-loaded, so the merge cannot remove it: the post-hook deletes every
-- order that has a tombstone and is no longer in staging (the staging model drops deleted orders)
-- depends_on: {{ ref('stg_shop__deletions') }}

with

orders as (

    select * from {{ ref('stg_shop__orders') }}

    {% if is_incremental() -%}
    -- only orders (re)loaded since the last build: new orders and updated ones. The merge on order_id replaces
    -- an updated order's old version. `>=` re-reads the last load once, which the merge makes harmless.
    where loaded_at >= (select max(loaded_at) from {{ this }})
    {%- endif %}

),

final as (

    select

        ----------  ids
        order_id,
        customer_id,
        product_id,

        ----------  numerics
        quantity,
        total_amount,

        ----------  timestamps
        ordered_at,
        order_date,
        loaded_at

    from orders

)

select * from final
