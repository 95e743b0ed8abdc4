{#-
    The dev data window: in dev and branch, a large source is cut to the rows of its last N days
    (var dev_window_days, default 90); `--vars '{ignore_date_limits: true}'` lifts it, and prod never has it.

    The window is anchored on the newest date in the source itself, not on today: the demo data is years old and
    must not come out empty. The anchor is a subquery evaluated by the warehouse, and the target check lives here,
    in the SQL body, never in a model's config: the models' code and config are the same for every target, so
    `state:modified` against a prod manifest sees only models that really changed.

    Use it in a staging model's import CTE, right after `select * from {{ source(...) }}`.
-#}
{% macro limit_to_dev_window(date_column, relation) -%}
    {%- set ignore_date_limits = var('ignore_date_limits', false) | string | lower in ('true', '1', 'yes') -%}
    {%- if dev_window_applies() and not ignore_date_limits -%}
        {%- set days = var('dev_window_days', 90) -%}
        {%- if days is not integer or days < 1 -%}
            {{ exceptions.raise_compiler_error(
                "var dev_window_days must be a whole number of days >= 1, got " ~ (days | string)
                ~ "; set it with --vars '{dev_window_days: 30}' or lift the window with "
                ~ "--vars '{ignore_date_limits: true}'"
            ) }}
        {%- endif -%}
    -- dev data window: the last {{ days }} days up to the newest date in the source
    where cast({{ date_column }} as date)
        > (select cast(max({{ date_column }}) as date) from {{ relation }}) - {{ days }}
    {%- endif -%}
{%- endmacro %}

{#- Whether this target has the dev data window: dev and branch do, prod never. A macro of its own so that a unit test
    can say "the window applies" (`overrides: macros: {dev_window_applies: true}`) and run the same under every target. -#}
{% macro dev_window_applies() -%}
    {{ return(target.name in ('dev', 'branch')) }}
{%- endmacro %}
