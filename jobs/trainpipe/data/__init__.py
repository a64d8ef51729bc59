"""The data layer: load and validate the input bars (`loading`), and build the real-price example (`example`)."""
