{#-
    A load timestamp from a column that is either a timestamp or an integer epoch in seconds (Sling writes
    `_sling_loaded_at` as one or the other depending on version). Casting through varchar lets one expression
    bind for both types.
-#}
{% macro to_loaded_at(column_name) -%}
    coalesce(
        try_cast(cast({{ column_name }} as varchar) as timestamptz),
        to_timestamp(try_cast(cast({{ column_name }} as varchar) as double))
    )
{%- endmacro %}
