COPY {{ table }} ({{ columns | join(', ') }}, source_key, source_line) FROM STDIN
