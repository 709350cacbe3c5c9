"""Streamlit explorer: reads the warehouse only."""
