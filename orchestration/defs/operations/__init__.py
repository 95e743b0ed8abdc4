"""Keeping the instance healthy: runs whose process died are marked failed and their slots freed."""
