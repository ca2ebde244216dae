"""One module per FHIR interaction (after samply/blaze), each naming the spec section it implements."""
