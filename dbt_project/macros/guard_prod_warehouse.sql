{#-
    A dev or branch run never writes the prod warehouse, whatever the settings say: the same rule as
    orchestration/lib/environment.py (`resolve` and `open_for_write`), for people who run dbt from the shell.

    profiles.yml refuses first, a dev target whose path spells ELT_PROD_DATABASE (before dbt-duckdb opens, and
    so would create, the file); this guard runs once connected and knows the real path of the open database, so it
    also catches another spelling of the prod file (a symlink) and the branch target.

    Runs from on-run-start, and from create_schema below, because dbt creates missing schemas before the
    on-run-start hooks run.
-#}
{% macro guard_prod_warehouse() %}
    {%- if execute and target.name != 'prod' -%}
        {%- set prod = _normalize_warehouse_location(env_var('ELT_PROD_DATABASE', '')) -%}
        {%- set current = _normalize_warehouse_location(target.get('path', '')) -%}
        {%- if prod and current and _is_same_warehouse(prod, current) -%}
            {{ exceptions.raise_compiler_error(
                "refusing to write the prod warehouse " ~ prod ~ " from the " ~ target.name ~ " target: "
                ~ "it is ELT_PROD_DATABASE; point the " ~ target.name ~ " target at another database "
                ~ "(ELT_DEV_DATABASE, ELT_BRANCH_ID), or run with ELT_ENV=prod"
            ) }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}


{% macro _normalize_warehouse_location(location) -%}
    {%- set location = (location or '') | string | trim -%}
    {%- if location.startswith('./') -%}
        {%- set location = location[2:] -%}
    {%- endif -%}
    {{- location -}}
{%- endmacro %}


{#-
    Equal strings, or, for files, the same absolute path: DuckDB reports the absolute path of the open
    database, and a relative ELT_PROD_DATABASE matches when it is a suffix of it (dbt runs from the repository
    root, the base that orchestration/lib/environment.py resolves relative paths against).
-#}
{% macro _is_same_warehouse(prod, current) -%}
    {%- if prod == current -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- if prod.startswith('md:') or current.startswith('md:') or current == ':memory:' -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set result = run_query(
        "select path from duckdb_databases() where database_name = current_database()"
    ) -%}
    {%- set current_absolute = result.columns[0].values()[0] if result and result.rows | length > 0 else none -%}
    {%- if not current_absolute -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- if prod.startswith('/') -%}
        {{- return(prod == current_absolute) -}}
    {%- endif -%}
    {{- return(current_absolute.endswith('/' ~ prod)) -}}
{%- endmacro %}


{#- dbt's create_schema, with the guard in front of the first write of a run. -#}
{% macro create_schema(relation) -%}
    {{ guard_prod_warehouse() }}
    {{ adapter.dispatch('create_schema', 'dbt')(relation) }}
{%- endmacro %}
