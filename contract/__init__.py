"""The contract between compute and the dashboard, torch-free: the artifact store's layout and Parquet schema
(``store``), the summaries computed from it (``summaries``), the names both sides use (``names``) and the error
type for bad input (``errors``). Documented for users in ``artifacts/README.md``."""
