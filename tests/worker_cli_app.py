"""A ServeMux for CLI tests that must get past loading the target."""

import asyncq

mux = asyncq.ServeMux()
