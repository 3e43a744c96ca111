.PHONY: run test bench
run:    ## set up and start the app on http://localhost:8501
	scripts/run.sh
test:   ## set up the same way and run every test
	scripts/test.sh
bench:  ## set up and print the performance figures
	scripts/setup.sh requirements-dev.txt && .venv/bin/python -m tests.bench.run
