-- The graph of every saga definition an engine registered (saga::Graph as JSON, see
-- saga/diagram.hpp), written when the engine starts. Tools (sagactl show --dot) draw a saga
-- instance over its definition without the C++ code.
CREATE TABLE saga_definitions (
  type          TEXT    NOT NULL,
  version       INTEGER NOT NULL,
  graph         TEXT    NOT NULL,  -- JSON
  registered_at INTEGER NOT NULL,
  PRIMARY KEY (type, version)
) STRICT;
