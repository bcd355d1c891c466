"""Tests of the async gate, its middleware, sweeper and metrics."""
