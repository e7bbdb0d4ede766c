-- A run database as the first RunStore schema (v1) left it: used by RunStoreTest to check the
-- migration to the current schema. The CREATE statements are kSchemaV1 of core/store/RunStore.cpp.
-- Run 3 was running when its process died (v1 kept no owner); run 5 has a status v2 does not
-- know; run 2's last loss is NULL (a NaN).
PRAGMA application_id = 1281455208;
PRAGMA user_version = 1;
BEGIN;
CREATE TABLE experiments(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at REAL NOT NULL);
CREATE TABLE runs(
  id INTEGER PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  config_json TEXT NOT NULL,
  status TEXT NOT NULL,
  device TEXT NOT NULL DEFAULT '',
  created_at REAL NOT NULL,
  started_at REAL,
  ended_at REAL);
CREATE TABLE metrics(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  PRIMARY KEY(run_id, name, step)) WITHOUT ROWID;
CREATE TABLE summaries(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value REAL,
  PRIMARY KEY(run_id, key)) WITHOUT ROWID;
INSERT INTO experiments VALUES(1, 'mnist-baselines', 1700000000.0);
INSERT INTO experiments VALUES(2, 'gpt-lora', 1700000100.0);
INSERT INTO runs VALUES(1, 1, 'mlp-adamw', '{"model":"mlp","optimizer":"adamw","lr":0.001}',
                        'finished', 'cpu', 1700000010.0, 1700000011.0, 1700000070.0);
INSERT INTO runs VALUES(2, 1, 'mlp-sgd', '{"model":"mlp","optimizer":"sgd","lr":0.1}',
                        'failed', 'cpu', 1700000020.0, 1700000021.0, 1700000030.0);
INSERT INTO runs VALUES(3, 2, 'gpt-lora-r8', '{"model":"gpt","lora":{"rank":8}}',
                        'running', 'cuda:0', 1700000110.0, 1700000111.0, NULL);
INSERT INTO runs VALUES(4, 2, 'gpt-lora-r16', '{"model":"gpt","lora":{"rank":16}}',
                        'queued', 'cuda:0', 1700000120.0, NULL, NULL);
INSERT INTO runs VALUES(5, 2, 'gpt-odd', '{}', 'exploded', 'cuda:1', 1700000130.0, NULL, NULL);
INSERT INTO metrics VALUES(1, 'loss', 0, 2.30), (1, 'loss', 1, 1.10), (1, 'loss', 2, 0.55);
INSERT INTO metrics VALUES(1, 'accuracy', 0, 0.10), (1, 'accuracy', 2, 0.97);
INSERT INTO metrics VALUES(2, 'loss', 0, 2.30), (2, 'loss', 1, NULL);
INSERT INTO metrics VALUES(3, 'loss', 0, 3.90), (3, 'loss', 10, 3.20);
INSERT INTO summaries VALUES(1, 'final_accuracy', 0.97), (1, 'params', 203530);
INSERT INTO summaries VALUES(3, 'params', 124439808);
COMMIT;
