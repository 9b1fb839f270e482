"""What leaves the run: the quality gate, publication to S3 and the Model Registry."""
