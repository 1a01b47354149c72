"""What every command-line test shares: it runs in its own temporary folder with a fixed terminal width."""

import pytest


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")
    return tmp_path
