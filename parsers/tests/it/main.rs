//! Integration tests of the parsers against real and generated logs.
