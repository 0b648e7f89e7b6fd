-- Every report query reads one consistent, read-only snapshot of the star schema.
-- (Redshift runs each transaction serializable already: nothing to set there.)
{% if dialect == 'postgres' -%}
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY
{%- endif %}
