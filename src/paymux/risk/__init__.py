"""Risk control (风控): lists, rules in CEL, decisions."""
