-- Binary when psycopg can send every column type that way: nothing is formatted as text and parsed back.
COPY {{ table }} ({{ columns | join(', ') }}, source_key, source_line) FROM STDIN{% if binary is defined and binary %} (FORMAT BINARY){% endif %}
