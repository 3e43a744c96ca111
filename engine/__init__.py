"""Everything the handbook computes. Plain Python, numpy and torch: no Streamlit here."""
