"""Dock panels around the canvas: node library, params, image viewer, log, packs."""
