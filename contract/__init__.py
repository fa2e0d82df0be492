"""The contract between compute and the dashboard, torch-free: the artifact store's layout and Parquet schema
(``store``), the summaries computed from it (``summaries``), the names both sides use (``names``), the error
type for bad input (``errors``), the catalog of models and prompt sets (``catalog``), and the queries and figures
the dashboard shares with the notebook API (``queries``, ``figures``). Documented for users in
``artifacts/README.md``."""
