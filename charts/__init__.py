"""Pure drawing functions: data in, figure out. No model calls and no Streamlit here."""
