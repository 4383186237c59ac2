"""Events to other systems (an MQTT broker, webhooks), delivered off the frame's path through bounded queues."""
