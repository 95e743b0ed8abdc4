{#-
    Models land in the schema named by their folder config (staging, intermediate, marts), exactly, in every
    target: each environment has its own database, so schemas need no target prefix. Without a custom schema,
    the target's schema (DuckDB: main).

    Write-Audit-Publish (orchestration/lib/publish.py): a prod run passes `--vars '{wap_slots: {<model>: <slot>}}'`,
    and a model named there lands in its versioned schema `<schema>__slot_<slot>` (the audit area); readers query
    `<schema>.<model>`, a view that the publish step points at the audited slot. Without the var (dev, branch, or
    dbt from the shell) every model builds in place.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set schema = target.schema if custom_schema_name is none else custom_schema_name | trim -%}
    {%- set slots = var('wap_slots', {}) or {} -%}
    {%- if node is not none and node.resource_type == 'model' and node.name in slots -%}
        {{ wap_slot_schema(schema, slots[node.name]) }}
    {%- else -%}
        {{ schema }}
    {%- endif -%}
{%- endmacro %}


{#- The versioned schema of a slot; orchestration/lib/publish.py spells it the same way (slot_schema). -#}
{% macro wap_slot_schema(schema, slot) -%}
    {%- if slot not in ('a', 'b', 'c') -%}
        {{ exceptions.raise_compiler_error(
            "var wap_slots: slot " ~ slot ~ " is not one of a, b, c (set by the prod run, orchestration/lib/publish.py)"
        ) }}
    {%- endif -%}
    {{- schema ~ '__slot_' ~ slot -}}
{%- endmacro %}
