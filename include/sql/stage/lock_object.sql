-- Serialise loads of the same object by concurrent runs; released at commit.
{% if dialect == 'redshift' -%}
LOCK stage_load_ledger;
{%- else -%}
SELECT pg_advisory_xact_lock(hashtext(%(table)s), hashtext(%(s3_key)s));
{%- endif %}
