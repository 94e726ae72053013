"""Plots and the HTML report, built only from the output tables (never parser internals)."""
