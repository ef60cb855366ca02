-- The audit log is append-only: the database refuses to change or remove a row.
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
	RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
