-- The staged objects recorded as missing; one found again is no longer missing.
{% if found is defined -%}
DELETE FROM stage_missing_objects WHERE table_name = %(table)s AND source_key = %(source_key)s
{%- else -%}
SELECT source_key FROM stage_missing_objects WHERE table_name = %(table)s
{%- endif %}
