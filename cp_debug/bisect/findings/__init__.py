"""The diagnosis of a root cause: each fault class a module that reads the numbers of its segment (range overflow,
underflow and flush, decision and index flips, eps, export semantics, Q/DQ and block scales, masks and guards,
runtime faults, graph differences) and says what it found with the number it rests on."""
