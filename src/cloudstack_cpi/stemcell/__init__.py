"""Stemcell image handling: detect formats, plan and stream uploads to CloudStack."""
