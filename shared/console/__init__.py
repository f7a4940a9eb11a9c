"""The operations console: find a booking, see its whole journey, watch the backlog (read-only).

One renderer, two doors. `calehr console` (cli/console/) serves these views as a local web app on
127.0.0.1 with the operator's own AWS credentials; the `console` function (functions/console/) returns
the same HTML as CloudWatch dashboard custom widgets. Both read through the stores (audit trail,
review store, lineage state) and render with `shared.console.render`; nothing here writes.

Modules: `query` (the search form, validated), `model` (what a view shows), `views` (pure: records →
view models), `reader` (the stores → view models), `render` (view models → HTML, Jinja2 templates in
`templates/`, one stylesheet in `static/`), `widget` (a CloudWatch custom-widget event → a view).
"""
