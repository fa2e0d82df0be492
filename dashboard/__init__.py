"""LocoLab dashboard: Streamlit pages over the artifact store; it never imports torch."""
