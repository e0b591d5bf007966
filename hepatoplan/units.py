"""Unit constants: every conversion goes through a named constant."""

MM3_PER_ML = 1000.0
DAYS_PER_WEEK = 7.0
