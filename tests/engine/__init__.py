"""Tests of the engine (nodegraph/)."""
