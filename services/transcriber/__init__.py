"""The transcriber: RQ workers that fetch each recording, transcribe it and store the text.

Modules, one concept each: `jobs` (the job and its state machine), `media` (download and
storage), `model_store` (the embedded Whisper model), `backends` (speech to text: local
faster-whisper or OpenAI's API), `lease` (proof of life of a running job), `worker` (the RQ
worker class), `pool` (the service: worker processes, scheduler, metrics endpoint), started
by `python -m transcriber`.
"""
