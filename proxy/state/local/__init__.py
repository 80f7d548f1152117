"""Sharing state between the workers of one host through files in the state directory: a flock and
change stamp helper, the cooldown file, the SQLite ``previous_response_id`` record."""
