"""Test and demo helpers shipped with the package (the OpenStack emulator)."""
