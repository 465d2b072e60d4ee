"""``touchstream bench``: raw consume ceiling vs naive Faust vs the Touchstream pipeline."""
