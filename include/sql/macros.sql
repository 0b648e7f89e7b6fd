{#- Dialect helpers shared by the SQL templates. `dialect` is 'postgres' or 'redshift'. -#}

{% macro distribution(style, key=none, sortkey=none) -%}
{%- if dialect == 'redshift' %}
DISTSTYLE {{ style }}{% if key %} DISTKEY ({{ key }}){% endif %}{% if sortkey %} SORTKEY ({{ sortkey }}){% endif %}
{%- endif %}
{%- endmacro %}

{#- Postgres needs explicit indexes where Redshift relies on sort keys and zone maps. -#}
{% macro index(name, table, columns) -%}
{%- if dialect == 'postgres' -%}
CREATE INDEX IF NOT EXISTS {{ name }} ON {{ table }} ({{ columns }});
{%- endif %}
{%- endmacro %}

{% macro lock(table) -%}
{%- if dialect == 'redshift' -%}
LOCK {{ table }};
{%- else -%}
LOCK TABLE {{ table }} IN SHARE ROW EXCLUSIVE MODE;
{%- endif %}
{%- endmacro %}

{#- True when two nullable values differ (Redshift has no IS DISTINCT FROM). -#}
{% macro differs(a, b) -%}
NOT ({{ a }} = {{ b }} OR ({{ a }} IS NULL AND {{ b }} IS NULL))
{%- endmacro %}

{#- A songplay's id: the md5 of its event's identity, so every load of the event gives the same id:
    md5('<userid>|<sessionid>|<iteminsession>|<ts as YYYY-MM-DD HH24:MI:SS.US>').
    TO_CHAR fixes the timestamp's text; a CAST to VARCHAR would follow the session's DateStyle.
    `e` is a row of staging_events. -#}
{% macro songplay_id(e) -%}
md5(CAST({{ e }}.userid AS VARCHAR) || '|' || CAST({{ e }}.sessionid AS VARCHAR) || '|'
    || CAST({{ e }}.iteminsession AS VARCHAR) || '|' || TO_CHAR({{ e }}.ts, 'YYYY-MM-DD HH24:MI:SS.US'))
{%- endmacro %}
