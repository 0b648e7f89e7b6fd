{#- Dialect helpers shared by the SQL templates. `dialect` is 'postgres' or 'redshift'. -#}

{% macro distribution(style, key=none, sortkey=none) -%}
{%- if dialect == 'redshift' %}
DISTSTYLE {{ style }}{% if key %} DISTKEY ({{ key }}){% endif %}{% if sortkey %} SORTKEY ({{ sortkey }}){% endif %}
{%- endif %}
{%- endmacro %}

{#- Postgres needs explicit indexes where Redshift relies on sort keys and zone maps. -#}
{% macro index(name, table, columns, where=none) -%}
{%- if dialect == 'postgres' -%}
CREATE INDEX IF NOT EXISTS {{ name }} ON {{ table }} ({{ columns }}){% if where %} WHERE {{ where }}{% endif %};
{%- endif %}
{%- endmacro %}

{#- A writer's lock: one writer at a time, readers go on. `shared` lets holders of the same
    kind in (PostgreSQL SHARE mode) while keeping writers out; Redshift has one kind of lock. -#}
{% macro lock(table, shared=false) -%}
{%- if dialect == 'redshift' -%}
LOCK {{ table }};
{%- else -%}
LOCK TABLE {{ table }} IN {{ 'SHARE' if shared else 'SHARE ROW EXCLUSIVE' }} MODE;
{%- endif %}
{%- endmacro %}

{#- The end of the hour that starts at `hour`. -#}
{% macro hour_end(hour) -%}
{{ hour }} + INTERVAL '1 hour'
{%- endmacro %}

{#- The run's window on `column`, its bounds bound as parameters. -#}
{% macro in_window(column) -%}
{{ column }} >= %(window_start)s AND {{ column }} < %(window_end)s
{%- endmacro %}

{#- The rows of `table` a data-quality check sees, meeting `condition` when given. With
    `window_column`, the run's window on it, and any row where it is NULL: such a row is in no
    window, so only this way can a null check see it (Redshift enforces NOT NULL, but the
    checks don't rely on the DDL). -#}
{% macro checked_rows(table, window_column=none, condition=none) -%}
FROM {{ table }}
{%- if window_column or condition %} WHERE {% endif %}
{%- if window_column %}({{ window_column }} IS NULL OR ({{ in_window(window_column) }})){% endif %}
{%- if window_column and condition %} AND {% endif %}
{%- if condition %}({{ condition }}){% endif %}
{%- endmacro %}

{#- A 28-bit hash of a row's values, to tell changed rows by sums of it per group. -#}
{% macro row_hash(columns) -%}
{%- set text -%}
{%- for column in columns %}COALESCE(CAST({{ column }} AS VARCHAR), '~'){% if not loop.last %} || '|' || {% endif %}{% endfor -%}
{%- endset -%}
{%- if dialect == 'redshift' -%}
STRTOL(SUBSTRING(MD5({{ text }}), 1, 7), 16)
{%- else -%}
CAST(CAST('x' || SUBSTRING(MD5({{ text }}), 1, 7) AS BIT(28)) AS BIGINT)
{%- endif %}
{%- endmacro %}

{#- The play each staged NextSong event gives, from `events` (rows of staging_events): one per
    event identity, the copy first by the values the play takes from it, so the choice depends
    on the staged rows alone, never on which file or line they came from (Redshift's COPY
    records neither). The song match needs title, artist name and duration to be equal; when
    several songs match, the lowest song_id wins. -#}
{% macro plays(events) -%}
SELECT {{ songplay_id('e') }} AS songplay_id,
       e.ts, e.userid, e.level, s.song_id, s.artist_id, e.sessionid, e.location, e.useragent
FROM (
    SELECT staged.*,
           ROW_NUMBER() OVER (PARTITION BY userid, sessionid, iteminsession, ts
                              ORDER BY level, location, useragent, song, artist, length) AS copy_number
    FROM ({{ events }}) staged
) e
LEFT JOIN (
    SELECT song_id, artist_id, title, artist_name, duration,
           ROW_NUMBER() OVER (PARTITION BY title, artist_name, duration ORDER BY song_id) AS rank
    FROM staging_songs
) s ON s.rank = 1 AND s.title = e.song AND s.artist_name = e.artist AND s.duration = e.length
WHERE e.copy_number = 1
{%- endmacro %}

{#- True when two nullable values differ, a NULL and a value included (Redshift has no
    IS DISTINCT FROM; NOT (a = b) would be NULL, not true, when just one is NULL). -#}
{% macro differs(a, b) -%}
({{ a }} <> {{ b }} OR ({{ a }} IS NULL) <> ({{ b }} IS NULL))
{%- endmacro %}

{#- A songplay's id: the md5 of its event's identity, so every load of the event gives the same id:
    md5('<userid>|<sessionid>|<iteminsession>|<ts as YYYY-MM-DD HH24:MI:SS.US>').
    TO_CHAR fixes the timestamp's text; a CAST to VARCHAR would follow the session's DateStyle.
    `e` is a row of staging_events. -#}
{% macro songplay_id(e) -%}
md5(CAST({{ e }}.userid AS VARCHAR) || '|' || CAST({{ e }}.sessionid AS VARCHAR) || '|'
    || CAST({{ e }}.iteminsession AS VARCHAR) || '|' || TO_CHAR({{ e }}.ts, 'YYYY-MM-DD HH24:MI:SS.US'))
{%- endmacro %}

{#- The staged rows a staging change touches, on one side of it (`phase`): on PostgreSQL the
    rows of the objects being replaced (before) or just copied (after); on Redshift the rows
    the COPY's new rows replace by upsert key (before) or those new rows (after). -#}
{% macro changed_rows(table, phase, upsert_keys=()) -%}
{%- if dialect == 'postgres' -%}
SELECT * FROM {{ table }} WHERE source_key = ANY(%(source_keys)s)
{%- elif phase == 'before' -%}
SELECT * FROM {{ table }} WHERE EXISTS (
    SELECT 1 FROM {{ table }}_new n
    WHERE {% for key in upsert_keys %}n.{{ key }} = {{ table }}.{{ key }}{% if not loop.last %} AND {% endif %}{% endfor %})
{%- else -%}
SELECT * FROM {{ table }}_new
{%- endif %}
{%- endmacro %}

{#- Materialise a dimension from the rows the caller's block selects (one per key), as a merge
    or, with the full_refresh param, as a rebuild: the rows go to a temp table <table>_latest;
    a merge deletes the keys no longer selected (of those in `scope`, a table of keys, when
    given), updates the rows whose values differ and inserts the new keys; a rebuild deletes
    every row and inserts them all. The caller locks the table first. -#}
{% macro merge(table, key, columns, scope=none) -%}
CREATE TEMP TABLE {{ table }}_latest AS
{{ caller() }};

{% if params.full_refresh -%}
DELETE FROM {{ table }};
{%- else -%}
DELETE FROM {{ table }}
WHERE {% if scope %}{{ key }} IN (SELECT {{ key }} FROM {{ scope }})
  AND {% endif %}NOT EXISTS (SELECT 1 FROM {{ table }}_latest l WHERE l.{{ key }} = {{ table }}.{{ key }});

UPDATE {{ table }}
SET {% for column in columns %}{{ column }} = l.{{ column }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ table }}_latest l
WHERE {{ table }}.{{ key }} = l.{{ key }}
  AND ({% for column in columns %}{{ differs(table ~ '.' ~ column, 'l.' ~ column) }}{{ " OR " if not loop.last }}{% endfor %});
{%- endif %}

INSERT INTO {{ table }} ({{ key }}, {{ columns | join(', ') }})
SELECT l.{{ key }}, {% for column in columns %}l.{{ column }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ table }}_latest l
WHERE NOT EXISTS (SELECT 1 FROM {{ table }} WHERE {{ table }}.{{ key }} = l.{{ key }});

DROP TABLE {{ table }}_latest;
{%- endmacro %}
