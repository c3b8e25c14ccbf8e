-- es 0.4.0 -> 0.5.0: robustness (issue 11) and what follows it
--
-- Each section below names what it changes and why.

\echo Use "ALTER EXTENSION es UPDATE TO '0.5.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Try appends (issue 13, item 1)
--
-- es.try_append, es.try_append_json and es.try_append_event are the append
-- functions with one difference: a stale expected version returns NULL
-- instead of raising ES001, so that a retry loop neither aborts its
-- transaction nor writes an ERROR to the server log per conflict.  They run
-- the same C code as es.append* (src/append.c), under the same stream lock;
-- every other error still raises.  The expected version is required (NULL
-- is 22004).  Like es.append*, they insert in C, need no privilege on
-- es.events, and are not SECURITY DEFINER: EXECUTE on them is the right to
-- append, granted to nobody by default.
-- ---------------------------------------------------------------------------

CREATE FUNCTION es.try_append(
    stream_id text,
    events es.new_event[],
    expected_version bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_try_append'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.try_append(text, es.new_event[], bigint) IS
    'es.append that returns NULL, writing nothing and raising nothing, when the stream is not at expected_version (required: 0 none, -1 some, N exactly N); other errors raise. A repeat of an earlier call (same event ids) returns its version.';

CREATE FUNCTION es.try_append_json(
    stream_id text,
    events jsonb,
    expected_version bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_try_append_json'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.try_append_json(text, jsonb, bigint) IS
    'es.append_json that returns NULL instead of raising ES001 when the stream is not at expected_version (required).';

-- expected_version keeps its place and its DEFAULT so that named calls can
-- leave metadata out; a call that leaves it out too gets 22004.
CREATE FUNCTION es.try_append_event(
    stream_id text,
    event_type text,
    data jsonb,
    metadata jsonb DEFAULT NULL,
    expected_version bigint DEFAULT NULL,
    event_id uuid DEFAULT NULL,
    schema_version int DEFAULT 1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_try_append_event'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.try_append_event(text, text, jsonb, jsonb, bigint, uuid, int) IS
    'es.append_event that returns NULL instead of raising ES001 when the stream is not at expected_version (required: NULL is an error).';

REVOKE EXECUTE ON FUNCTION
    es.try_append(text, es.new_event[], bigint),
    es.try_append_json(text, jsonb, bigint),
    es.try_append_event(text, text, jsonb, jsonb, bigint, uuid, int)
  FROM PUBLIC;
