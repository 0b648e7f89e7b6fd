-- Serialise loads of the same objects by concurrent runs; released at commit.
-- Locks are taken in key order so two runs never wait on each other in a cycle.
{% if dialect == 'redshift' -%}
LOCK stage_load_ledger;
{%- else -%}
SELECT pg_advisory_xact_lock(hashtext(%(table)s), hashtext(source_key))
FROM unnest(CAST(%(source_keys)s AS TEXT[])) AS keys (source_key)
ORDER BY source_key
{%- endif %}
