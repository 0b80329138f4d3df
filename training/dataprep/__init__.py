"""Preparing the data set: fetching it, deriving its splits, matching copies to originals."""
