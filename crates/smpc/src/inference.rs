pub struct InferConfig; pub struct InferenceReport; pub fn run_in_process(){}
