{#-
    Models land in the schema named by their folder config (staging, intermediate, marts), exactly, in every
    target: each environment has its own database, so schemas need no target prefix. Without a custom schema,
    the target's schema (DuckDB: main).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
