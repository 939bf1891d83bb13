"""Shared test harness (real servers, real files, real ptys): imported by tests, never a test."""
