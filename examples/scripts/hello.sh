#!/bin/sh
# Greets whoever `name` says; shows how params arrive as environment variables.
echo "Hello, ${name:-world}, from $(hostname)!"
