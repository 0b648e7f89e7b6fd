-- Two first runs creating the tables at once would race in the catalog; the first to take
-- this lock creates them, the other waits and finds them. Held until create_tables commits.
{% if dialect == 'postgres' -%}
SELECT pg_advisory_xact_lock(hashtext('sparkify.create_tables'))
{%- else -%}
SELECT 1
{%- endif %}
