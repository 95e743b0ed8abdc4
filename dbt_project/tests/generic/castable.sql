{#-
    Fails for every row whose text value does not convert to the type `to` (or, with date_format, does not parse
    as a date in that strptime format). Put it on raw text columns so a bad value in a load fails a source test
    that names the column, and blocks the staging model that would cast it, instead of a conversion error deep in
    a mart build. Nulls are left to not_null.
-#}
{% test castable(model, column_name, to, date_format=none) %}

select *
from {{ model }}
where {{ column_name }} is not null
  and {% if date_format -%}
    try_strptime(cast({{ column_name }} as varchar), '{{ date_format }}') is null
  {%- else -%}
    try_cast({{ column_name }} as {{ to }}) is null
  {%- endif %}

{% endtest %}
