DROP TRIGGER audit_events_append_only ON audit_events;
DROP FUNCTION audit_events_append_only();
