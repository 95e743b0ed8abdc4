"""Shared mechanisms the source slices import: the asset-key rule, the dbt translator, the warehouse resource."""
